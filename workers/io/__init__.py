"""Where records come from and go to: files, topics, dry runs, and the one loop that drives them."""
