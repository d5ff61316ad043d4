"""The wizard's screens: the main wizard screen, one pane module per step, and the modals."""
