"""Use cases, the ports they need from outside, and the projections that build read models."""
