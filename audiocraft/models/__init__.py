"""Models: MusicGen, the language model and the EnCodec compression model."""
