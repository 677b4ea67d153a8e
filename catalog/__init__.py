"""sneakernet.catalog."""
