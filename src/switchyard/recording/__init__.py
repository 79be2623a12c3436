"""Record and replay of upstream provider traffic."""
