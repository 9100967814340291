"""Learning rules: local conductance updates from the voltages of the free and nudged phases."""
