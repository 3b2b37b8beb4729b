"""The terminal launcher (`mgrb tui`): a Textual app over a core that imports no UI."""
