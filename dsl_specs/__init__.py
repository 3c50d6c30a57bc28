"""The shipped `.unroll` specs (package data); `unrollc list` shows them."""
