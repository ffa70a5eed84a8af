"""voxbench: decide with evidence whether a new voice-cloning TTS engine should replace production."""

__version__ = "0.1.0"
