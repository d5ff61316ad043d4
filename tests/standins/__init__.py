"""cvtriton_standins: the local stand-ins for external systems (the product's test kit).

Installed under a unique name (folder ``tests/standins``) so tests, the wizard's Pilot tests and a developer
at a shell can start them: see README "Stand-ins".
"""
