package tools

import (
	"bytes"
	"fmt"
	"image"
	"image/png"

	"golang.org/x/image/draw"
)

// maxPixels bounds the images fitPNG decodes: a PNG from a sandbox is
// untrusted, and a small file can declare a huge canvas.
const maxPixels = 40 << 20

// fitPNG returns b if it is within max bytes, else a downscaled copy that
// is, or nil and a note saying why the figure was dropped. A downscaled
// figure comes with a note too.
func fitPNG(b []byte, max int) ([]byte, string) {
	if len(b) <= max {
		return b, ""
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, "a figure was not a valid PNG and was dropped"
	}
	if cfg.Width*cfg.Height > maxPixels {
		return nil, fmt.Sprintf("a %dx%d figure was too large to return and was dropped: save it with a lower dpi or size", cfg.Width, cfg.Height)
	}
	src, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, "a figure was not a valid PNG and was dropped"
	}
	w, h := cfg.Width, cfg.Height
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	for range 4 {
		w, h = w*7/10, h*7/10
		if w < 16 || h < 16 {
			break
		}
		dst := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
		var out bytes.Buffer
		if err := enc.Encode(&out, dst); err != nil {
			break
		}
		if out.Len() <= max {
			return out.Bytes(), fmt.Sprintf("a %dx%d figure (%s) was downscaled to %dx%d to fit the %s limit",
				cfg.Width, cfg.Height, byteCount(int64(len(b))), w, h, byteCount(int64(max)))
		}
	}
	return nil, fmt.Sprintf("a %dx%d figure (%s) was above the %s limit even downscaled and was dropped: save it to a file and download it",
		cfg.Width, cfg.Height, byteCount(int64(len(b))), byteCount(int64(max)))
}
