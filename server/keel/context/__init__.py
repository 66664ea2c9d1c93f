"""What the models see of a repository: the inventory, the map and read-only exploration."""
