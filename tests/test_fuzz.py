"Randomised: whatever bytes or small images the loader is given, it loads them correctly or raises MnistDataError."
import io, numpy as np, pytest
from hypothesis import example, given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays
from PIL import Image
from mnist_scratch.loading import read_digit, MnistDataError

def png_bytes(a, mode):
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format='PNG')
    return buf.getvalue()

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes(tmp_path, data):
    fn = tmp_path/'x.png'
    fn.write_bytes(data)
    try: a = read_digit(fn)
    except MnistDataError as e: assert str(fn) in str(e)
    else: assert a.shape == (28, 28) and a.dtype == np.uint8

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=arrays(np.uint8, st.just((28, 28)) | st.tuples(st.integers(1, 40), st.integers(1, 40))),
       cut=st.just(0) | st.integers(1, 100))
@example(a=np.zeros((28, 28), np.uint8), cut=1) # only the end marker cut: every pixel is still there
@example(a=np.zeros((28, 28), np.uint8), cut=13) # the image data's checksum cut too: PIL still decodes every pixel
def test_arbitrary_small_images(tmp_path, a, cut):
    "Grayscale PNGs of any size, possibly truncated: the 28x28 ones load with their exact pixels or fail clearly."
    fn = tmp_path/'x.png'
    data = png_bytes(a, 'L')
    fn.write_bytes(data[:len(data)-cut])
    if a.shape != (28, 28):
        with pytest.raises(MnistDataError, match=str(fn)): read_digit(fn)
    elif cut == 0: assert np.array_equal(read_digit(fn), a)
    else: # truncated: an error naming the file, or (when only checksums and the end marker were cut) the exact pixels
        try: got = read_digit(fn)
        except MnistDataError as e: assert str(fn) in str(e)
        else: assert np.array_equal(got, a) # never wrong pixels without an error
