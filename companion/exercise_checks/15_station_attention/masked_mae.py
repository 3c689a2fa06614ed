from otter.test_files import test_case

OK_FORMAT = False

name = "masked_mae"
points = None

@test_case(points=1, hidden=False)
def test_masked_mae_small(masked_mae):
    from companion.exercises import station_attention as ex
    ex.check_masked_mae_small(masked_mae)

