"""What both sites share on the web side: wiring, headers, error pages, forms, frames, the server."""
