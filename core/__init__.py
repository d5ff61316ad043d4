"""cvtriton_core: the async pipeline behind cvtriton-tui. Imports no UI library (a test proves it)."""
