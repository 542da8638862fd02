"""The read side: projections that fold events into rows, and the queries answered from them."""
