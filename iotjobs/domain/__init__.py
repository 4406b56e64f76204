"""Pure domain core: commands, events, deciders, validation. Standard library only."""
