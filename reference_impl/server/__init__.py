"""lockd: the asyncio server around the Replica (client port, HTTP port, leader timers)."""
