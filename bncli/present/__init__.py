"""How each kind of result is shown: its Document of parts (tables, json, markdown, pictures)."""
