from sneakernet.cli.launch import main

main()
