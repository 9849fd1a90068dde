"""Small helpers shared by every layer (no BasicSR)."""
