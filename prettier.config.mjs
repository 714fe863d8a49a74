// The code's existing style. printWidth 240 was measured: of 160/180/200/220/240/260, it is the width
// at which `prettier --write` rewrote the fewest existing lines (133; 189 at 200, 254 at 160).
export default {
  singleQuote: true,
  semi: true,
  trailingComma: 'all',
  printWidth: 240,
};
