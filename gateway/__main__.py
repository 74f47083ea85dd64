from gateway.node.cli import main

main()
