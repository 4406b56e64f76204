from services.dataplane.main import main

main()
