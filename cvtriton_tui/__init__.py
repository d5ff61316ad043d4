"""cvtriton_tui: the Textual wizard and the headless command line."""
