"""Small pieces every stage shares: CLI errors, atomic writes, worker processes."""
