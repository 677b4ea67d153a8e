from sneakernet.cli.app import main

main()
