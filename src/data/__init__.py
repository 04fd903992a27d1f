"""Reading medical images, normalising, slicing, splitting, degrading and simulating them."""
