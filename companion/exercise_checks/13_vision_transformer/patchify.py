from otter.test_files import test_case

OK_FORMAT = False

name = "patchify"
points = None

@test_case(points=1, hidden=False)
def test_patchify_small(patchify):
    from companion.exercises import vision_transformer as ex
    ex.check_patchify_small(patchify)

