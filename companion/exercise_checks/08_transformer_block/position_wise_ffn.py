from otter.test_files import test_case

OK_FORMAT = False

name = "position_wise_ffn"
points = None

@test_case(points=1, hidden=False)
def test_position_wise_ffn_small(position_wise_ffn):
    from companion.exercises import transformer_block as ex
    ex.check_position_wise_ffn_small(position_wise_ffn)

