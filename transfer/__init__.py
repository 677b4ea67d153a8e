"""sneakernet.transfer."""
