"""`python -m fleetrel.emulator ...` is `fleetrel emulator ...` (what start_emulator runs)."""
from fleetrel.emulator.command import emulator

emulator(prog_name="fleetrel emulator")
