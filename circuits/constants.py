"""Physical constants, as ngspice has them (src/include/ngspice/const.h: CODATA 2014).

Every part of the project (the diode law, the noise sources, exported netlists) takes
them from here, so the engines and the netlists agree on ``Vt = k T / q`` to the last bit.
"""

#: Boltzmann's constant, J/K.
BOLTZMANN_J_PER_K = 1.38064852e-23

#: Elementary charge, C.
ELECTRON_CHARGE_C = 1.6021766208e-19

#: Offset of the Celsius scale, K.
CELSIUS_TO_KELVIN = 273.15

#: ngspice's nominal temperature (TNOM and TEMP), degrees Celsius: the temperature the physics assumes.
NOMINAL_TEMPERATURE_C = 27.0


def thermal_voltage(temperature_c: float = NOMINAL_TEMPERATURE_C) -> float:
    """``Vt = k T / q`` in volts (25.86 mV at 27 degC)."""
    return BOLTZMANN_J_PER_K * (temperature_c + CELSIUS_TO_KELVIN) / ELECTRON_CHARGE_C
