"""UPS: Universal Physics Simulator."""
