from fleetrel.cli import main

main()
