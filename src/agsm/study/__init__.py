"""Studies of the method on ShapesWorld: measurements that call the library and add no logic to it."""
