print("hello from a berth session")
