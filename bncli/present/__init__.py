"""Presentation per result: each module makes one kind of result's Document parts (table, json, pictures)."""
