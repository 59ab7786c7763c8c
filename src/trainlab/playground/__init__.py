"""``trainlab playground``: a local web page that trains real trainlab models and shows why they learn or fail."""
