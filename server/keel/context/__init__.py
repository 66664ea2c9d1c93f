"""Choosing and bounding what the models see of a workspace: the inventory and the map."""
