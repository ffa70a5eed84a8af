"""Stand-ins for the GPU world: TTS and co-tenant servers, their images, the default reference."""
