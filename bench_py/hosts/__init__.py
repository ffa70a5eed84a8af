"""Preparing and keeping hosts: the offline bundle setup.yml installs, the orphan sweep, recovery."""
