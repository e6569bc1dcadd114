from cim.cli import main

main()
