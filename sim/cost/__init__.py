"""What a step costs: the step's physics (step), the fitted constants (calibration)."""
