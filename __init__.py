"""eqspice: memristor crossbars settled by ngspice, trained by equilibrium propagation."""

__version__ = "0.1.0"
