"""Adapters: one per external system, each hiding its SDK behind async methods that speak the core's types.

Steps never import an SDK; a stand-in swaps in by configuration (an endpoint URL), not by patching.
"""
