"""Hardware faults: their rates, their arrivals, what a replica's recovery takes, and the injector that runs them."""
