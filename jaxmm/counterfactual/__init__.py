"""Masks, fills and vmapped counterfactual passes (SynIB and the masking control)."""
