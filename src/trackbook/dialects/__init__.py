"""Wire formats: each dialect parses its vendor's requests and renders its errors."""
