"""sneakernet.schemas."""
