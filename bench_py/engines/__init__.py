"""Install paths of the engine under test and adapters for incumbents."""
