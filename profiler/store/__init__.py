"""Run folders (manifest + points.jsonl) and compact baseline files: JSON in, values out."""
