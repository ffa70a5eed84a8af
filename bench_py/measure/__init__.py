"""Measurement: streaming client, decoders, timings, memory, co-tenant probe."""
