from otter.test_files import test_case

OK_FORMAT = False

name = "sinusoidal_encoding"
points = None

@test_case(points=1, hidden=False)
def test_sinusoidal_encoding_small(sinusoidal_encoding):
    from companion.exercises import positional_encoding as ex
    ex.check_sinusoidal_encoding_small(sinusoidal_encoding)

