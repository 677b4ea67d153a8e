"""sneakernet.cli."""
